"""A generator for the scale-out tests: the engine with the tiny model, slowed to about STEP seconds per
decoding step, so a test can catch (and kill) a worker in the middle of a batch."""

import os
import time


def factory(model):
    from billionsongs.model.generate import Generator

    generator = Generator(model or os.environ["BILLIONSONGS_MODEL"])
    original = generator.run
    step = float(os.environ.get("SLOWGEN_STEP_SECONDS", "0.02"))

    def run(take, batch_size=16, on_token=None, on_song=None):
        def slow(song_id, token):
            time.sleep(step / batch_size)
            if on_token:
                on_token(song_id, token)
        return original(take, batch_size=batch_size, on_token=slow, on_song=on_song)

    generator.run = run
    return generator
