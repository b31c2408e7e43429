"""TCMP: real-time emotion pre-recognition in conversations, as a Transformers model."""
