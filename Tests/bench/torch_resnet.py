"""PyTorch peer for the import bench: torchvision's ResNet-18 (random weights), evaluation mode,
no_grad, 2 threads, batches of BATCH at HxW; prints images/s. Also exports it to ONNX (opset 13,
dynamic batch) when given a path. Usage: /usr/bin/python3 torch_resnet.py BATCH HW [EXPORT.onnx]"""
import sys, time
import torch, torchvision
batch, hw = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(2); torch.manual_seed(0)
m = torchvision.models.resnet18().eval()
if len(sys.argv) > 3:
    torch.onnx.export(m, torch.randn(1, 3, hw, hw), sys.argv[3], opset_version=13, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
x = torch.rand(8 * batch, 3, hw, hw)
best = 0
with torch.no_grad():
    for i in range(0, 2 * batch, batch): m(x[i:i + batch])
    for _ in range(2):
        t = time.perf_counter()
        for i in range(0, len(x), batch): m(x[i:i + batch])
        best = max(best, len(x) / (time.perf_counter() - t))
print(f"torch\t{best:.0f}")
