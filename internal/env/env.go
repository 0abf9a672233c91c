// Package env reads the environment variables that set the defaults of the
// worker's and the starter's flags, so that both binaries read a name the
// same way: S3_TLS=true, the first of S3_ACCESS_KEY_ID and its aliases.
//
// Pass the names as string literals: the deploy tests find the variables a
// binary reads by scanning its sources for literals passed to functions of
// this package (and os.Getenv), and check the deployment files against them.
package env

import "os"

// The S3 endpoint and bucket of both binaries' flags when S3_ENDPOINT and
// S3_BUCKET are unset: a MinIO on this machine, where deploy/devstack runs
// it.
const (
	DefaultS3Endpoint = "127.0.0.1:9000"
	DefaultS3Bucket   = "sessionflow"
)

// Or returns the value of the environment variable name, or def if it is
// unset or empty.
func Or(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// First returns the value of the first of the environment variables names
// that is set and not empty, or "" if none is: the first name is the
// binaries' own, the others its aliases.
func First(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// True reports whether the environment variable name is "true", the one
// spelling the binaries take for a switch (S3_TLS=true, KAFKA_TLS=true).
func True(name string) bool { return os.Getenv(name) == "true" }

// S3Credentials returns the S3 access key and secret key as both binaries
// read them: S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, else the AWS_ names,
// else MinIO's root user and password. Either may be "".
func S3Credentials() (accessKey, secretKey string) {
	return First("S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER"),
		First("S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD")
}
