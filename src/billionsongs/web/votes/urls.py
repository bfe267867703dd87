from django.urls import path

from billionsongs.web.votes import views

urlpatterns = [
    path("song/<str:song_id>/votes/", views.widget, name="vote-widget"),
    path("song/<str:song_id>/vote/", views.vote, name="vote"),
    path("top/", views.top, name="top"),
    path("my/votes/", views.my_votes, name="my-votes"),
]
