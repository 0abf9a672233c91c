package ingest

import (
	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// scramClient adapts github.com/xdg-go/scram (RFC 5802, RFC 7677) to
// sarama's SCRAMClient, as sarama's own SASL/SCRAM example does: sarama
// leaves the exchange to the caller. One value serves one authentication.
// The library refuses servers that ask for fewer than 4096 PBKDF2
// iterations, Kafka's minimum.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

// newSCRAMClient returns sarama's SCRAMClientGeneratorFunc for
// SCRAM-SHA-256 or SCRAM-SHA-512.
func newSCRAMClient(mechanism string) func() sarama.SCRAMClient {
	h := scram.SHA256
	if mechanism == sarama.SASLTypeSCRAMSHA512 {
		h = scram.SHA512
	}
	return func() sarama.SCRAMClient { return &scramClient{hash: h} }
}

func (c *scramClient) Begin(user, password, authzID string) error {
	client, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	c.conv = client.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }

func (c *scramClient) Done() bool { return c.conv.Done() }
