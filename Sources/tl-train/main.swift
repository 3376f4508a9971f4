import TLTools
TrainTool.main()
