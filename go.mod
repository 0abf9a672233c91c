module github.com/sessionflow/sessionflow

go 1.26

require (
	github.com/cespare/xxhash/v2 v2.3.0
	github.com/spf13/cobra v1.10.2
	github.com/spf13/pflag v1.0.10
	github.com/valyala/fastjson v1.6.10
)

require github.com/inconshreveable/mousetrap v1.1.0 // indirect
