"""Reading radiographs and the geometry between image pixels, millimetres, the model's canvas and the head frame.
No torch."""
