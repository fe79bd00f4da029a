"""hrc_fl: perception, intention, ISO/TS 15066 safety and federated learning for HRC cells."""

__version__ = "0.1.0"
