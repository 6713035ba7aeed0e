"""The ranking stage, the floor above the models (hmgnn.models, which imports nothing from here): candidate
sources (`candidates`), pair features as of a day (`features`, `pairs`), the learned ranker (`ranker`, fit by `fit`),
what a model.pt may hold (`checkpoint`) and the two-stage recommender over the trained GNN (`recommender`: `gnn`,
`gnn-retrieval`, `ranker-only`, `reference`), which the model registry imports on first use."""
