#!/usr/bin/env python3
"""Writes the small synthetic data sets in data/synthetic/ (seeded, so the
committed files can be regenerated bit for bit): linear regression with
Gaussian noise and logistic regression with Bernoulli labels, both with known
true weights. Python standard library only."""
import math
import os
import random

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "synthetic")


def write(name, rows, features):
    with open(os.path.join(OUT, name), "w") as f:
        f.write(",".join([f"x{i}" for i in range(features)] + ["y"]) + "\n")
        for x, y in rows:
            f.write(",".join(f"{v:.6f}" for v in x) + f",{y:.6f}\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(20261123)
    # Linear: y = w.x + b + N(0, 0.1^2), 8 features.
    w = [1.5, -2.0, 0.5, 0.0, 3.0, -1.0, 0.25, 2.0]
    b = 0.7
    def linear_rows(n):
        rows = []
        for _ in range(n):
            x = [rng.gauss(0, 1) for _ in w]
            rows.append((x, sum(a * c for a, c in zip(w, x)) + b + rng.gauss(0, 0.1)))
        return rows
    write("linear_train.csv", linear_rows(2000), len(w))
    write("linear_test.csv", linear_rows(500), len(w))
    # Logistic: P(y=1) = sigmoid(w.x + b), 6 features.
    w = [2.0, -1.0, 0.5, -1.5, 1.0, 0.0]
    b = -0.5
    def logistic_rows(n):
        rows = []
        for _ in range(n):
            x = [rng.gauss(0, 1) for _ in w]
            p = 1 / (1 + math.exp(-(sum(a * c for a, c in zip(w, x)) + b)))
            rows.append((x, 1.0 if rng.random() < p else 0.0))
        return rows
    write("logistic_train.csv", logistic_rows(4000), len(w))
    write("logistic_test.csv", logistic_rows(1000), len(w))


if __name__ == "__main__":
    main()
