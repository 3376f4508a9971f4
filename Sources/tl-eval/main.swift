import TLTools
EvalTool.main()
