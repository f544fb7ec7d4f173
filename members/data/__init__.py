"""The data side: labels CSVs, folders and MedMNIST files in; the prepared split; one image to a tensor (fundus crop, Ben preprocessing, the tf.data pipeline)."""
