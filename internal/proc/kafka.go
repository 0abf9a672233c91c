package proc

import (
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is the in-process Kafka-protocol broker (kfake) that stands in for
// Kafka on this machine: one broker, its topics made up front.
type Kafka struct {
	// Port is the broker's port on loopback; 0 picks a free one.
	Port int
	// Topics are made with Partitions partitions each, DLQs with one.
	Topics     []string
	Partitions int
	DLQs       []string
	// MaxMessageBytes is the broker's message.max.bytes.
	MaxMessageBytes int
}

// Start starts the broker; its addresses are ListenAddrs. Close it when
// done.
func (k Kafka) Start() (*kfake.Cluster, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(k.MaxMessageBytes)})}
	if k.Port != 0 {
		opts = append(opts, kfake.Ports(k.Port))
	}
	if len(k.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(k.Partitions), k.Topics...))
	}
	if len(k.DLQs) > 0 {
		opts = append(opts, kfake.SeedTopics(1, k.DLQs...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("kfake: %w", err)
	}
	return c, nil
}
