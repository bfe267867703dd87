"""Song text: the document format shared by training and generation, and titles."""
