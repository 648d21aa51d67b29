"""The network: the U-Net, its heatmaps (softmax over the map, decoding) and the one path from a radiograph to the
network's input."""
