"""bert: BERT pre-training and fine-tuning in TensorFlow 2, faithful to Google's reference."""

__version__ = "0.2.0"
