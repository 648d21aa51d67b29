"""What is written for a user: the files of a detection, the overlay picture, the report (an overview page and a
page per named analysis), a folder of images."""
