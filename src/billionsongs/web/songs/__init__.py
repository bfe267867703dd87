"""Songs: the stored song for each ID, its page, generation queue and worker, and random picks."""
