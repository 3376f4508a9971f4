"""PyTorch peer for the training bench: the same LeNet-5 and cnn-small, SGD momentum 0.9,
2 threads, on the same images (an IDX .gz file), one epoch; prints images/s and peak RSS.
Usage: python3 torch_train.py IMAGES.gz LABELS.gz ROWS ARCH BATCH"""
import gzip, resource, sys, time
import numpy as np
import torch
import torch.nn as nn

images, labels, rows, arch, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
torch.set_num_threads(2)
torch.manual_seed(0)
x = np.frombuffer(gzip.open(images).read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:rows]
y = np.frombuffer(gzip.open(labels).read(), np.uint8, offset=8)[:rows]
x = torch.tensor((x / 255.0 - 0.286) / 0.353, dtype=torch.float32)
y = torch.tensor(y, dtype=torch.int64)

def lenet5():
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
def cnn_small():
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(12544, 128), nn.ReLU(), nn.Linear(128, 10))
model = {"lenet5": lenet5, "cnn-small": cnn_small}[arch]()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
perm = torch.randperm(rows)
t = time.perf_counter()
for i in range(0, rows, batch):
    idx = perm[i:i + batch]
    opt.zero_grad()
    loss = loss_fn(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
train = rows / (time.perf_counter() - t)
model.eval()
with torch.no_grad():
    t = time.perf_counter()
    for i in range(0, rows, batch):
        model(x[i:i + batch])
    infer = rows / (time.perf_counter() - t)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(f"torch\t{arch}\t{batch}\t{train:.0f}\t{infer:.0f}\t{rss}")
