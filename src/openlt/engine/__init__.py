"""Training, evaluation and prediction over run directories."""
