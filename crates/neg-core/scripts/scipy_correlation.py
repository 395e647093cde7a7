"""scipy's two-sided p-values of Pearson and Spearman correlations, the reference for
neg_core::aux_metrics' Student t test (crates/neg-core/tests/scipy_agreement.rs).

Usage: scipy_correlation.py CASES.json  ->  prints JSON [{"pearson": [r, p], "spearman": [rho, p]}]
CASES.json: [{"x": [...], "y": [...]}, ...]
"""
import json
import sys

from scipy import stats

cases = json.load(open(sys.argv[1]))
out = []
for c in cases:
    pr = stats.pearsonr(c["x"], c["y"])
    sr = stats.spearmanr(c["x"], c["y"])
    out.append({"pearson": [float(pr.statistic), float(pr.pvalue)],
                "spearman": [float(sr.statistic), float(sr.pvalue)]})
print(json.dumps(out))
