"""Analyses of a trained ANN, free of any UI: what the app shows for one image (explore, features,
panels), the same aggregated over many images (context, nb_compare, figures), and the cost of the
blocks and the network (efficiency). The app and the command lines call them; they call neither.
"""
