"""A trained model's life after training: export to a self-contained model directory and load it back."""
