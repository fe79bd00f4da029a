"""Add NormalizationOptions metadata (mean 0, std 255) to a pose landmark ``.tflite``.

Run as a SCRIPT in a subprocess, never imported by hrc_fl: its first argument is a folder holding the
metadata writer unpacked from the mediapipe 0.10.21 wheel, which must shadow the installed mediapipe
(1.2.2, whose writer is broken) on ``sys.path``.

Usage: python pose_metadata_script.py WRITER_DIR IN.tflite OUT.tflite
"""

import sys


def main(argv: list[str]) -> int:
    writer_dir, src, dst = argv
    sys.path.insert(0, writer_dir)
    from mediapipe.tasks.metadata import schema_py_generated as schema_fb
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    with open(src, "rb") as f:
        buf = bytearray(f.read())
    model = schema_fb.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    output_names = [graph.Tensors(graph.Outputs(i)).Name().decode() for i in range(graph.OutputsLength())]
    writer = metadata_writer.MetadataWriter.create(buf)
    writer.add_general_info(model_name="pose_landmarks_detector",
                            model_description="MediaPipe BlazePose GHUM 3D landmark model")
    writer.add_image_input(norm_mean=[0.0], norm_std=[255.0])
    for name in output_names:
        writer.add_feature_output(name=name)
    out, _ = writer.populate()
    with open(dst, "wb") as f:
        f.write(out)
    print(f"outputs={output_names}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
