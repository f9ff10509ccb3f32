// Package deploy holds no code: its tests check the deployment files of the
// repository (docker-compose.yml and deploy/kubernetes/) against the
// Kubernetes API types and a real Compose implementation. It is its own
// module so the service's go.mod does not carry the Kubernetes API.
package deploy
