"""hmgnn: personalised top-12 H&M fashion recommendations with a graph neural network."""

__version__ = "0.1.0"
