"""Local fakes of external services (SendGrid, Twilio, Slack) for tests."""

from tests.fakes.providers import (
    FakeProvider,
    FakeSendGrid,
    FakeSlack,
    FakeTwilio,
    Recorded,
    Reply,
)

__all__ = ["FakeProvider", "FakeSendGrid", "FakeSlack", "FakeTwilio", "Recorded", "Reply"]
