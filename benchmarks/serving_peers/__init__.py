"""The servers ``bench_serving.py`` compares loopml with, each run with uvicorn in its own
process: the tutorial FastAPI app and the bare ONNX Runtime endpoint (the floor)."""
