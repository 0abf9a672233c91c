package ingest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/IBM/sarama"
)

// DefaultClientID is the client id KafkaOptions.Config gives the brokers
// when ClientID is empty.
const DefaultClientID = "sessionflow"

// KafkaOptions are the connection settings shared by the ingesters, their
// dead-letter producers and the Kafka notifier: TLS and SASL.
type KafkaOptions struct {
	// ClientID names the process to the brokers; default DefaultClientID.
	ClientID string
	// StartNewest makes a consumer group without committed offsets start
	// at the end of the topic; by default it reads from the beginning.
	StartNewest bool

	// TLS turns on TLS; the CA file (PEM) replaces the system roots, the
	// certificate and key files (PEM) authenticate the client.
	TLS                bool
	CAFile             string
	CertFile, KeyFile  string
	ServerName         string
	InsecureSkipVerify bool

	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty means
	// no SASL.
	SASLMechanism string
	SASLUser      string
	SASLPassword  string
}

// Config returns a sarama config with these settings. It reads the TLS
// files; it connects to nothing.
func (o KafkaOptions) Config() (*sarama.Config, error) {
	c := sarama.NewConfig()
	c.Version = sarama.V2_8_0_0
	c.ClientID = DefaultClientID
	if o.ClientID != "" {
		c.ClientID = o.ClientID
	}
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	if o.StartNewest {
		c.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	if o.TLS {
		tc, err := o.tlsConfig()
		if err != nil {
			return nil, err
		}
		c.Net.TLS.Enable, c.Net.TLS.Config = true, tc
	} else if o.CAFile != "" || o.CertFile != "" || o.InsecureSkipVerify {
		return nil, errors.New("kafka: TLS files or options given without --kafka-tls")
	}
	if err := o.sasl(c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("kafka config: %w", err)
	}
	return c, nil
}

func (o KafkaOptions) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName, InsecureSkipVerify: o.InsecureSkipVerify}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka TLS CA: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka TLS CA %s: no PEM certificate in it", o.CAFile)
		}
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("kafka TLS: give both the client certificate and its key, or neither")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka TLS client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (o KafkaOptions) sasl(c *sarama.Config) error {
	mech := strings.ToUpper(o.SASLMechanism)
	if mech == "" {
		if o.SASLUser != "" || o.SASLPassword != "" {
			return errors.New("kafka: SASL credentials given without a SASL mechanism")
		}
		return nil
	}
	if o.SASLUser == "" || o.SASLPassword == "" {
		return fmt.Errorf("kafka SASL %s: set the user (KAFKA_SASL_USER) and the password (KAFKA_SASL_PASSWORD or a password file)", mech)
	}
	c.Net.SASL.Enable, c.Net.SASL.Handshake = true, true
	c.Net.SASL.User, c.Net.SASL.Password = o.SASLUser, o.SASLPassword
	switch mech {
	case sarama.SASLTypePlaintext:
		c.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case sarama.SASLTypeSCRAMSHA256, sarama.SASLTypeSCRAMSHA512:
		c.Net.SASL.Mechanism = sarama.SASLMechanism(mech)
		c.Net.SASL.SCRAMClientGeneratorFunc = newSCRAMClient(mech)
	default:
		return fmt.Errorf("kafka SASL mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", o.SASLMechanism)
	}
	return nil
}

// String describes the settings without their secrets, for logs.
func (o KafkaOptions) String() string {
	s := fmt.Sprintf("tls=%v", o.TLS)
	if o.SASLMechanism != "" {
		s += fmt.Sprintf(" sasl=%s user=%s", strings.ToUpper(o.SASLMechanism), o.SASLUser)
	}
	return s
}
