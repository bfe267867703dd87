"""Votes: one changeable up/down vote per user and song, the vote widget, the Top chart and "my votes"."""
