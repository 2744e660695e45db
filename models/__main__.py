"""``python -m rctc.models``: regenerate the ready ONNX files next to the package."""

from __future__ import annotations

from . import parameter_count, write_ready_files


def main() -> None:
    import onnx

    for p in write_ready_files():
        print(f"{p.name:24s} {p.stat().st_size:>9d} bytes  {parameter_count(onnx.load(str(p))):>8d} params")


if __name__ == "__main__":
    main()
