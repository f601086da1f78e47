"""Reference Soft-NMS for the tests and the benchmark: the plain-Python loop the vectorised models.nms.soft_nms
must agree with."""
import math


def naive_soft_nms(segs, scores, sigma=0.5, min_score=1e-3):
    """Plain-python Gaussian Soft-NMS: list of (index, score), best first."""
    cand = {i: float(s) for i, s in enumerate(scores) if s >= min_score}
    out = []
    while cand:
        best = max(cand, key=lambda i: (cand[i], -i))
        out.append((best, cand.pop(best)))
        for i in list(cand):
            a, b = segs[i], segs[best]
            inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
            iou = inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)
            cand[i] *= math.exp(-iou * iou / sigma)
            if cand[i] < min_score:
                del cand[i]
    return out
