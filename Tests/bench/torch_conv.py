"""PyTorch peer for the convolution bench: the same layers, batch 64, images/s.
Run by bench.sh with Debian's python3 (python3-torch). Prints one line per layer."""
import time, sys
import torch
torch.manual_seed(0)
layers = [("1->32 3x3 @28x28", 1, 32, 28), ("32->64 3x3 @28x28", 32, 64, 28), ("32->64 3x3 @14x14", 32, 64, 14)]

def best(fn, min_time=0.5):
    fn()
    b, total, n = 1e9, 0.0, 0
    while total < min_time or n < 3:
        t = time.perf_counter(); fn(); d = time.perf_counter() - t
        b = min(b, d); total += d; n += 1
    return b

res = {}
for th in (1, 2):
    torch.set_num_threads(th)
    for name, c, oc, hw in layers:
        conv = torch.nn.Conv2d(c, oc, 3, padding=1)
        x = torch.randn(64, c, hw, hw, requires_grad=True)
        with torch.no_grad():
            f = 64 / best(lambda: conv(x))
        y = conv(x); g = torch.randn_like(y)
        def bwd():
            x.grad = None; conv.zero_grad(set_to_none=True)
            torch.autograd.grad(y, [x, conv.weight, conv.bias], g, retain_graph=True)
        b = 64 / best(bwd)
        res.setdefault(name, {})[th] = (f, b)
print(f"  torch {torch.__version__}, same layers:")
for name, _, _, _ in layers:
    (f1, b1), (f2, b2) = res[name][1], res[name][2]
    print(f"  {name:<24}{f1:9.1f}{f2:9.1f}{f2/f1:7.2f}{b1:9.1f}{b2:9.1f}{b2/b1:7.2f}")
