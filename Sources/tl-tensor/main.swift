import TLTools
TensorTool.main()
