package sinks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// Kafka record headers, the same names and values as the webhook headers.
const (
	HeaderChangeHash = "X-Peat-Change-Hash"
	HeaderOrgID      = "X-Peat-Org-Id"
)

type kafkaDriver struct {
	cl    *kgo.Client
	topic string
	org   string
}

func newKafkaDriver(cl *kgo.Client, spec SinkSpec) (*kafkaDriver, error) {
	t := strings.TrimSpace(spec.Topic)
	if err := validTopic(t); err != nil {
		return nil, err
	}
	return &kafkaDriver{cl: cl, topic: t, org: spec.OrgID}, nil
}

// validTopic applies Kafka's topic name rules, so a bad name is reported at
// sink creation instead of as a failure of every record.
func validTopic(t string) error {
	if t == "" {
		return errors.New("topic is empty")
	}
	if len(t) > 249 || t == "." || t == ".." {
		return fmt.Errorf("topic %q is not a valid Kafka topic name", t)
	}
	for _, r := range t {
		if !(r == '.' || r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return fmt.Errorf("topic %q is not a valid Kafka topic name (allowed: A-Z a-z 0-9 . _ -)", t)
		}
	}
	return nil
}

// Deliver produces the batch (key = document_id, so one document stays on
// one partition, in order) and waits for every acknowledgement. The client
// is idempotent with acks=all, so a record is reported delivered only once
// all in-sync replicas have it, and broker-side retries cannot duplicate or
// reorder it.
func (d *kafkaDriver) Deliver(ctx context.Context, events []model.CdcEvent) []Result {
	res := make([]Result, len(events))
	failed := failedDocs{}
	for _, wave := range waves(events) {
		var wg sync.WaitGroup
		sent := make([]bool, len(events))
		for _, i := range wave {
			ev := &events[i]
			if failed.blocked(ev) {
				res[i] = Result{Err: ErrBlocked}
				continue
			}
			if d.org != "" && ev.OrgID != d.org {
				res[i] = Result{Err: ErrOtherOrg, Permanent: true}
				failed.mark(ev)
				continue
			}
			data, err := MarshalEvent(ev)
			if err != nil {
				res[i] = Result{Err: fmt.Errorf("encode event: %w", err), Permanent: true}
				failed.mark(ev)
				continue
			}
			rec := &kgo.Record{
				Topic: d.topic,
				Key:   []byte(ev.DocumentID),
				Value: data,
				Headers: []kgo.RecordHeader{
					{Key: "Content-Type", Value: []byte("application/json")},
					{Key: HeaderChangeHash, Value: []byte(ev.ChangeHash)},
					{Key: HeaderOrgID, Value: []byte(ev.OrgID)},
				},
			}
			wg.Add(1)
			sent[i] = true
			// Each promise writes only its own index; wg.Wait orders
			// those writes before the reads below.
			d.cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
				if err != nil {
					res[i] = kafkaResult(err)
				}
				wg.Done()
			})
		}
		wg.Wait()
		for _, i := range wave {
			if sent[i] && res[i].Err != nil {
				failed.mark(&events[i])
			}
		}
	}
	return res
}

// kafkaResult classifies a produce error: only errors that no retry can fix
// (the record or the topic name is invalid) are permanent. Authorization
// failures stay retryable: an operator can fix the ACL, and the retry budget
// still dead-letters the event if nobody does.
func kafkaResult(err error) Result {
	err = fmt.Errorf("Kafka produce: %w", err)
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge),
		errors.Is(err, kerr.InvalidTopicException), errors.Is(err, kerr.InvalidRecord):
		return Result{Err: err, Permanent: true}
	}
	return Result{Err: err}
}

// Close is a no-op: the client belongs to the Factory.
func (d *kafkaDriver) Close() error { return nil }
