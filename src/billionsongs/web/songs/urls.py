from django.urls import path

from billionsongs.web.songs import stream, views

urlpatterns = [
    path("", views.random_song, name="random"),
    path("song/", views.song_lookup, name="song-lookup"),
    path("song/<str:song_id>/", views.song_page, name="song"),
    path("song/<str:song_id>/stream/", stream.song_stream, name="song-stream"),
    path("song/<str:song_id>/progress/", stream.song_progress, name="song-progress"),
    path("song/<str:song_id>/karaoke.mid", views.song_karaoke, name="song-karaoke"),
]
