package env

import "testing"

func TestOr(t *testing.T) {
	t.Setenv("SESSIONFLOW_ENV_TEST", "")
	if got := Or("SESSIONFLOW_ENV_TEST", "def"); got != "def" {
		t.Errorf("empty: Or = %q, want the default", got)
	}
	t.Setenv("SESSIONFLOW_ENV_TEST", "set")
	if got := Or("SESSIONFLOW_ENV_TEST", "def"); got != "set" {
		t.Errorf("set: Or = %q, want %q", got, "set")
	}
}

func TestFirst(t *testing.T) {
	t.Setenv("SESSIONFLOW_ENV_A", "")
	t.Setenv("SESSIONFLOW_ENV_B", "b")
	t.Setenv("SESSIONFLOW_ENV_C", "c")
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{[]string{"SESSIONFLOW_ENV_A", "SESSIONFLOW_ENV_B", "SESSIONFLOW_ENV_C"}, "b"},
		{[]string{"SESSIONFLOW_ENV_C", "SESSIONFLOW_ENV_B"}, "c"},
		{[]string{"SESSIONFLOW_ENV_A"}, ""},
		{nil, ""},
	} {
		if got := First(tc.names...); got != tc.want {
			t.Errorf("First(%q) = %q, want %q", tc.names, got, tc.want)
		}
	}
}

func TestTrue(t *testing.T) {
	for v, want := range map[string]bool{"true": true, "": false, "1": false, "TRUE": false, "yes": false} {
		t.Setenv("SESSIONFLOW_ENV_TEST", v)
		if got := True("SESSIONFLOW_ENV_TEST"); got != want {
			t.Errorf("True with %q = %v, want %v", v, got, want)
		}
	}
}

func TestS3Credentials(t *testing.T) {
	for _, n := range []string{"S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		t.Setenv(n, "")
	}
	t.Setenv("MINIO_ROOT_USER", "minio")
	t.Setenv("MINIO_ROOT_PASSWORD", "minio-secret")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
	if a, s := S3Credentials(); a != "minio" || s != "aws-secret" {
		t.Errorf("S3Credentials = %q, %q; want the MinIO user and the AWS secret", a, s)
	}
	t.Setenv("S3_ACCESS_KEY_ID", "s3")
	if a, _ := S3Credentials(); a != "s3" {
		t.Errorf("S3Credentials access key = %q, want S3_ACCESS_KEY_ID's", a)
	}
}
