module cairn.test/helmrender

go 1.19
