package controlplane

import (
	"testing"

	"citybridge/controlplane/etcdtest"
)

// etcdEndpoints returns the client URLs of the test binary's shared
// embedded 3-member cluster, starting it on first use.
func etcdEndpoints(t *testing.T) []string { return etcdtest.Shared(t).Endpoints }

// stopCluster stops the shared cluster (TestMain, after the tests).
func stopCluster() { etcdtest.StopShared() }
