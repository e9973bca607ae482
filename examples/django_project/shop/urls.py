from django.urls import path
from orders import views

urlpatterns = [
    path("", views.index),
    path("orders/", views.place_order),
    path("orders/on-commit/", views.place_order_on_commit),
    path("orders/<int:pk>/", views.order),
    path("tasks/<str:name>/", views.enqueue),
    path("atasks/<str:name>/", views.aenqueue),
    path("results/<str:result_id>/", views.result),
    path("aresults/<str:result_id>/", views.aresult),
]
