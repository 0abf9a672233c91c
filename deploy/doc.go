// Package deploy has no code of its own: it is the home of the deployment
// files (the pipelines file of the docker-compose stack, the Kubernetes
// manifests under k8s/) and of the tests that keep them, docker-compose.yml
// and the Dockerfile true to the binaries — the services, ports, environment
// names and flags are checked against what worker and starter really read.
package deploy
