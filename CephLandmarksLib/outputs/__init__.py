"""What is written for a user: the files of a detection, the overlay picture, the one-page report, a folder of
images."""
