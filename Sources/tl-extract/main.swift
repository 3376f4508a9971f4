import TLTools
ExtractTool.main()
