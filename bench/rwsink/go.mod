module otel_ml/bench/rwsink

go 1.23

require (
	github.com/golang/snappy v1.0.0
	google.golang.org/protobuf v1.36.12
)
