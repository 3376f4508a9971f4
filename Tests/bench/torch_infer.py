"""PyTorch peer for the extraction bench: the same network (weights from tl's model as .npz),
evaluation mode, no_grad, 2 threads, batches of BATCH over the images; prints images/s.
Usage: /usr/bin/python3 torch_infer.py ARCH WEIGHTS.npz IMAGES.npz BATCH"""
import sys, time
import numpy as np
import torch
import torch.nn as nn

arch, weights, images, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(2)
w = np.load(weights)
layers = {
    "lenet5": [("conv1", nn.Conv2d(1, 6, 5)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)), ("conv2", nn.Conv2d(6, 16, 5)),
               ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)), ("flatten", nn.Flatten()), ("fc1", nn.Linear(256, 120)), ("relu3", nn.ReLU()),
               ("fc2", nn.Linear(120, 84)), ("relu4", nn.ReLU())],
    "cnn-small": [("conv1", nn.Conv2d(1, 32, 3, padding=1)), ("relu1", nn.ReLU()), ("conv2", nn.Conv2d(32, 64, 3, padding=1)), ("relu2", nn.ReLU()),
                  ("pool1", nn.MaxPool2d(2)), ("flatten", nn.Flatten()), ("fc1", nn.Linear(12544, 128)), ("relu3", nn.ReLU())],
}[arch]
model = nn.Sequential(*[m for _, m in layers])
with torch.no_grad():
    for name, m in layers:
        if hasattr(m, "weight"):
            m.weight.copy_(torch.from_numpy(w[name + ".weight"])); m.bias.copy_(torch.from_numpy(w[name + ".bias"]))
model.eval()
x = np.load(images)["x"].astype(np.float32)
x = torch.from_numpy(((x / 255.0 - 0.286) / 0.353).astype(np.float32)).reshape(-1, 1, 28, 28)
best = 0
with torch.no_grad():
    for i in range(0, 20 * batch, batch): model(x[i:i + batch])
    for _ in range(3):
        t = time.perf_counter()
        for i in range(0, len(x) - batch + 1, batch): model(x[i:i + batch])
        best = max(best, (len(x) // batch * batch) / (time.perf_counter() - t))
print(f"torch\t{best:.0f}")
