"""The ranking stage: candidate sources (`candidates`), pair features as of a day (`features`, `pairs`) and the
learned ranker (`ranker`) that orders each customer's candidates."""
