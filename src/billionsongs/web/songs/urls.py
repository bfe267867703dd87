from django.urls import path

from billionsongs.web.songs import views

urlpatterns = [
    path("", views.random_song, name="random"),
    path("song/<str:song_id>/", views.song_page, name="song"),
    path("song/<str:song_id>/karaoke.mid", views.song_karaoke, name="song-karaoke"),
]
