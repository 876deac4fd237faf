"""Export (ONNX, CTranslate2, int8) with parity checks and accuracy gates; one loader for every format."""
