"""The provider channels on the real SDKs, against local fakes of SendGrid, Twilio and Slack."""

from __future__ import annotations

import logging
import re
import time

import pytest

from duly.settings import Settings
from notifications.channels import (
    ChannelMessage,
    ConfigurationSendError,
    PermanentSendError,
    SendError,
    TransientSendError,
)
from notifications.providers import (
    SendGridEmail,
    SlackMessenger,
    TwilioSms,
    _retry_after,
    _scrub,
    build_channels,
)
from tests.fakes.fixtures import fake_sendgrid, fake_slack, fake_twilio  # noqa: F401
from tests.fakes.providers import FakeSendGrid, FakeSlack, FakeTwilio

EMAIL = "ada.lovelace@example.com"
PHONE = "+15005550006"
SLACK_USER = "U024BE7LH"
FROM_EMAIL = "compliance@duly.example"
FROM_NUMBER = "+15005550001"
SHORT_TIMEOUT = 0.3
BLOCKS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Fire safety* is due on 1 June."}},
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": "acknowledge",
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "value": "wf-1",
            }
        ],
    },
]


def message(to: str, **overrides: object) -> ChannelMessage:
    fields: dict[str, object] = {
        "idempotency_key": "wf-1|pack-abc|due|P-7|email",
        "to": to,
        "subject": "Fire safety training is due",
        "text": "Your fire safety training is due on 1 June.",
        "html": "<p>Your <b>fire safety</b> training is due on 1 June.</p>",
        "blocks": BLOCKS,
        "metadata": {"workflow_id": "wf-1", "stage": "due"},
    }
    fields.update(overrides)
    return ChannelMessage(**fields)  # type: ignore[arg-type]


def assert_pii_free(exc: SendError, *values: str) -> None:
    """Neither the message nor the reason names the address; no SDK exception is chained."""
    for value in values:
        assert value not in str(exc)
        assert value not in exc.reason
    assert exc.__cause__ is None
    assert exc.__suppress_context__


# -------------------------------------------------------------------------------------------------
# SendGrid
# -------------------------------------------------------------------------------------------------


def sendgrid_channel(fake: FakeSendGrid, timeout: float = 5.0) -> SendGridEmail:
    return SendGridEmail(fake.api_key, FROM_EMAIL, fake.base_url, timeout=timeout)


def test_sendgrid_sends_text_html_and_custom_args(fake_sendgrid: FakeSendGrid) -> None:  # noqa: F811
    result = sendgrid_channel(fake_sendgrid).send(message(EMAIL))

    assert result.provider == "sendgrid"
    assert result.provider_message_id == fake_sendgrid.message_ids[0]
    assert result.channel_ref is None
    [request] = fake_sendgrid.accepted
    assert (request.method, request.path) == ("POST", "/v3/mail/send")
    assert request.headers["authorization"] == f"Bearer {fake_sendgrid.api_key}"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "from": {"email": FROM_EMAIL},
        "subject": "Fire safety training is due",
        "personalizations": [{"to": [{"email": EMAIL}]}],
        "content": [
            {"type": "text/plain", "value": "Your fire safety training is due on 1 June."},
            {
                "type": "text/html",
                "value": "<p>Your <b>fire safety</b> training is due on 1 June.</p>",
            },
        ],
        "custom_args": {
            "workflow_id": "wf-1",
            "stage": "due",
            "idempotency_key": "wf-1|pack-abc|due|P-7|email",
        },
    }


def test_sendgrid_text_only(fake_sendgrid: FakeSendGrid) -> None:  # noqa: F811
    sendgrid_channel(fake_sendgrid).send(message(EMAIL, html=None, metadata={}))

    body = fake_sendgrid.accepted[0].json
    assert body["content"] == [
        {"type": "text/plain", "value": "Your fire safety training is due on 1 June."}
    ]
    assert body["custom_args"] == {"idempotency_key": "wf-1|pack-abc|due|P-7|email"}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_sendgrid_5xx_is_transient(fake_sendgrid: FakeSendGrid, status: int) -> None:  # noqa: F811
    fake_sendgrid.fail_next(1, status=status)

    with pytest.raises(TransientSendError) as info:
        sendgrid_channel(fake_sendgrid).send(message(EMAIL))

    assert info.value.code == f"sendgrid:{status}"
    assert info.value.retry_after is None
    assert len(fake_sendgrid.received) == 1  # the SDK did not retry
    assert fake_sendgrid.accepted == []
    assert_pii_free(info.value, EMAIL)


def test_sendgrid_429_carries_retry_after(fake_sendgrid: FakeSendGrid) -> None:  # noqa: F811
    fake_sendgrid.rate_limit_next(1, retry_after=7)

    with pytest.raises(TransientSendError) as info:
        sendgrid_channel(fake_sendgrid).send(message(EMAIL))

    assert info.value.code == "sendgrid:429"
    assert info.value.retry_after == 7
    assert_pii_free(info.value, EMAIL)


def test_sendgrid_invalid_address_is_permanent(fake_sendgrid: FakeSendGrid) -> None:  # noqa: F811
    fake_sendgrid.permanent_next(1)

    with pytest.raises(PermanentSendError) as info:
        sendgrid_channel(fake_sendgrid).send(message(EMAIL))

    assert info.value.code == "sendgrid:400"
    assert info.value.reason == (
        "Does not contain a valid address. (personalizations.0.to.0.email)"
    )
    assert_pii_free(info.value, EMAIL)


def test_sendgrid_bad_api_key_is_a_configuration_error(fake_sendgrid: FakeSendGrid) -> None:  # noqa: F811
    channel = SendGridEmail("SG.wrong", FROM_EMAIL, fake_sendgrid.base_url, timeout=5)

    with pytest.raises(ConfigurationSendError) as info:
        channel.send(message(EMAIL))

    assert info.value.code == "sendgrid:401"
    assert "DULY_SENDGRID_API_KEY" in info.value.fix
    assert "SG.wrong" not in str(info.value) + info.value.fix
    assert_pii_free(info.value, EMAIL)


def test_sendgrid_403_is_a_configuration_error(fake_sendgrid: FakeSendGrid) -> None:  # noqa: F811
    fake_sendgrid.fail_next(1, status=403)

    with pytest.raises(ConfigurationSendError) as info:
        sendgrid_channel(fake_sendgrid).send(message(EMAIL))

    assert info.value.code == "sendgrid:403"
    assert "Mail Send" in info.value.fix and "DULY_SENDGRID_FROM_EMAIL" in info.value.fix


def test_sendgrid_rejected_credentials_then_fixed(fake_sendgrid: FakeSendGrid) -> None:  # noqa: F811
    fake_sendgrid.reject_credentials_next(1)
    channel = sendgrid_channel(fake_sendgrid)

    with pytest.raises(ConfigurationSendError):
        channel.send(message(EMAIL))
    channel.send(message(EMAIL))

    assert len(fake_sendgrid.received) == 2 and len(fake_sendgrid.accepted) == 1


def test_sendgrid_timeout_is_transient(fake_sendgrid: FakeSendGrid) -> None:  # noqa: F811
    fake_sendgrid.slow_next(1, seconds=3)
    started = time.monotonic()

    with pytest.raises(TransientSendError) as info:
        sendgrid_channel(fake_sendgrid, timeout=SHORT_TIMEOUT).send(message(EMAIL))

    assert time.monotonic() - started < 2
    assert info.value.code == "sendgrid:timeout"
    assert_pii_free(info.value, EMAIL)


def test_sendgrid_connection_refused_is_transient() -> None:
    with FakeSendGrid() as fake:
        base_url, api_key = fake.base_url, fake.api_key  # the port is closed after this block

    with pytest.raises(TransientSendError) as info:
        SendGridEmail(api_key, FROM_EMAIL, base_url, timeout=2).send(message(EMAIL))

    assert info.value.code == "sendgrid:connection"


# -------------------------------------------------------------------------------------------------
# Twilio
# -------------------------------------------------------------------------------------------------


def twilio_channel(
    fake: FakeTwilio, timeout: float = 5.0, status_callback: str | None = None
) -> TwilioSms:
    return TwilioSms(
        fake.account_sid,
        fake.auth_token,
        FROM_NUMBER,
        fake.base_url,
        status_callback,
        timeout=timeout,
    )


def test_twilio_sends_sms_to_the_base_url(fake_twilio: FakeTwilio) -> None:  # noqa: F811
    callback = "https://duly.example/webhooks/twilio/status"

    result = twilio_channel(fake_twilio, status_callback=callback).send(message(PHONE))

    assert result.provider == "twilio"
    assert re.fullmatch(r"SM[0-9a-f]{32}", result.provider_message_id)
    [request] = fake_twilio.accepted
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.body == {
        "To": PHONE,
        "From": FROM_NUMBER,
        "Body": "Your fire safety training is due on 1 June.",
        "StatusCallback": callback,
    }


def test_twilio_without_status_callback_omits_it(fake_twilio: FakeTwilio) -> None:  # noqa: F811
    twilio_channel(fake_twilio).send(message(PHONE))

    assert "StatusCallback" not in fake_twilio.accepted[0].json


def test_twilio_checks_basic_auth(fake_twilio: FakeTwilio) -> None:  # noqa: F811
    channel = TwilioSms(
        fake_twilio.account_sid, "wrong-token", FROM_NUMBER, fake_twilio.base_url, timeout=5
    )

    with pytest.raises(ConfigurationSendError) as info:
        channel.send(message(PHONE))

    assert info.value.code == "twilio:20003"
    assert "DULY_TWILIO_AUTH_TOKEN" in info.value.fix
    assert "wrong-token" not in str(info.value) + info.value.fix
    assert fake_twilio.accepted == []


@pytest.mark.parametrize("code", [20005, 21606])
def test_twilio_account_and_sender_errors_are_configuration_errors(
    fake_twilio: FakeTwilio,  # noqa: F811
    code: int,
) -> None:
    fake_twilio.permanent_next(1, code=code)

    with pytest.raises(ConfigurationSendError) as info:
        twilio_channel(fake_twilio).send(message(PHONE))

    assert info.value.code == f"twilio:{code}"
    assert_pii_free(info.value, PHONE)


@pytest.mark.parametrize("status", [500, 503])
def test_twilio_5xx_is_transient(fake_twilio: FakeTwilio, status: int) -> None:  # noqa: F811
    fake_twilio.fail_next(1, status=status)

    with pytest.raises(TransientSendError) as info:
        twilio_channel(fake_twilio).send(message(PHONE))

    assert info.value.code == f"twilio:{20000 + status}"
    assert info.value.retry_after is None
    assert len(fake_twilio.received) == 1
    assert_pii_free(info.value, PHONE)


def test_twilio_429_carries_retry_after(fake_twilio: FakeTwilio) -> None:  # noqa: F811
    fake_twilio.rate_limit_next(1, retry_after=4)

    with pytest.raises(TransientSendError) as info:
        twilio_channel(fake_twilio).send(message(PHONE))

    assert info.value.code == "twilio:20429"
    assert info.value.retry_after == 4
    assert_pii_free(info.value, PHONE)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (21211, "invalid 'To' phone number"),
        (21610, "recipient has unsubscribed (replied STOP)"),
        (21614, "'To' number is not a mobile number"),
        (21408, "SMS to this region is not enabled on the Twilio account"),
        (21612, "the 'To' number cannot receive SMS from this sender"),
    ],
)
def test_twilio_recipient_errors_are_permanent(
    fake_twilio: FakeTwilio,  # noqa: F811
    code: int,
    reason: str,
) -> None:
    fake_twilio.permanent_next(1, code=code)

    with pytest.raises(PermanentSendError) as info:
        twilio_channel(fake_twilio).send(message(PHONE))

    assert info.value.code == f"twilio:{code}"
    assert info.value.reason == reason
    assert_pii_free(info.value, PHONE)


def test_twilio_unknown_error_message_is_scrubbed(fake_twilio: FakeTwilio) -> None:  # noqa: F811
    fake_twilio.permanent_next(1, code=21999, message=f"The number {PHONE} is not allowed.")

    with pytest.raises(PermanentSendError) as info:
        twilio_channel(fake_twilio).send(message(PHONE))

    assert info.value.code == "twilio:21999"
    assert info.value.reason == "The number <number> is not allowed."
    assert_pii_free(info.value, PHONE)


def test_twilio_timeout_is_transient(fake_twilio: FakeTwilio) -> None:  # noqa: F811
    fake_twilio.slow_next(1, seconds=3)
    started = time.monotonic()

    with pytest.raises(TransientSendError) as info:
        twilio_channel(fake_twilio, timeout=SHORT_TIMEOUT).send(message(PHONE))

    assert time.monotonic() - started < 2
    assert info.value.code == "twilio:timeout"
    assert_pii_free(info.value, PHONE)


# -------------------------------------------------------------------------------------------------
# Slack
# -------------------------------------------------------------------------------------------------


def slack_channel(fake: FakeSlack, timeout: float = 5.0) -> SlackMessenger:
    return SlackMessenger(fake.token, fake.base_url, timeout=timeout)


def test_slack_posts_text_and_blocks(fake_slack: FakeSlack) -> None:  # noqa: F811
    result = slack_channel(fake_slack).send(message(SLACK_USER))

    assert result.provider == "slack"
    assert result.provider_message_id == "1700000000.000100"
    assert result.channel_ref == "D0" + SLACK_USER[1:]  # the bot's DM with the user
    [request] = fake_slack.accepted
    assert (request.method, request.path) == ("POST", "/api/chat.postMessage")
    assert request.headers["authorization"] == f"Bearer {fake_slack.token}"
    assert request.body == {
        "channel": SLACK_USER,
        "text": "Your fire safety training is due on 1 June.",
        "blocks": BLOCKS,
    }


def test_slack_posts_to_a_channel(fake_slack: FakeSlack) -> None:  # noqa: F811
    result = slack_channel(fake_slack).send(message("#compliance", blocks=None))

    assert result.channel_ref == "#compliance"
    assert fake_slack.accepted[0].body == {
        "channel": "#compliance",
        "text": "Your fire safety training is due on 1 June.",
    }


def test_slack_update_edits_the_message(fake_slack: FakeSlack) -> None:  # noqa: F811
    channel = slack_channel(fake_slack)
    posted = channel.send(message(SLACK_USER))
    assert posted.channel_ref is not None
    done = [{"type": "section", "text": {"type": "mrkdwn", "text": "Acknowledged, thank you."}}]

    updated = channel.update(posted.channel_ref, posted.provider_message_id, "Acknowledged", done)

    assert updated.provider_message_id == posted.provider_message_id
    assert updated.channel_ref == posted.channel_ref
    request = fake_slack.accepted[-1]
    assert request.path == "/api/chat.update"
    assert request.body == {
        "channel": posted.channel_ref,
        "ts": posted.provider_message_id,
        "text": "Acknowledged",
        "blocks": done,
    }
    current = fake_slack.messages[(posted.channel_ref, posted.provider_message_id)]
    assert (current["text"], current["blocks"]) == ("Acknowledged", done)


def test_slack_update_of_unknown_message_is_permanent(fake_slack: FakeSlack) -> None:  # noqa: F811
    with pytest.raises(PermanentSendError) as info:
        slack_channel(fake_slack).update("D0123", "1700000000.999999", "x")

    assert info.value.code == "slack:message_not_found"


@pytest.mark.parametrize("status", [500, 503])
def test_slack_5xx_is_transient_and_not_retried(fake_slack: FakeSlack, status: int) -> None:  # noqa: F811
    fake_slack.fail_next(1, status=status)

    with pytest.raises(TransientSendError) as info:
        slack_channel(fake_slack).send(message(SLACK_USER))

    assert info.value.code == f"slack:http_{status}"
    assert len(fake_slack.received) == 1  # retry_handlers=[]: no SDK retry
    assert fake_slack.accepted == []


def test_slack_429_carries_retry_after(fake_slack: FakeSlack) -> None:  # noqa: F811
    fake_slack.rate_limit_next(1, retry_after=30)

    with pytest.raises(TransientSendError) as info:
        slack_channel(fake_slack).send(message(SLACK_USER))

    assert info.value.code == "slack:ratelimited"
    assert info.value.retry_after == 30
    assert len(fake_slack.received) == 1


@pytest.mark.parametrize(
    "error",
    ["user_not_found", "channel_not_found", "not_in_channel", "is_archived", "msg_too_long"],
)
def test_slack_api_errors_are_permanent(fake_slack: FakeSlack, error: str) -> None:  # noqa: F811
    fake_slack.permanent_next(1, error=error)

    with pytest.raises(PermanentSendError) as info:
        slack_channel(fake_slack).send(message(SLACK_USER))

    assert info.value.code == f"slack:{error}"
    assert_pii_free(info.value, SLACK_USER)
    assert fake_slack.accepted == []


def test_slack_default_permanent_is_user_not_found(fake_slack: FakeSlack) -> None:  # noqa: F811
    fake_slack.permanent_next(1)

    with pytest.raises(PermanentSendError) as info:
        slack_channel(fake_slack).send(message(SLACK_USER))

    assert (info.value.code, info.value.reason) == ("slack:user_not_found", "Slack user not found")


def test_slack_bad_token_is_a_configuration_error(fake_slack: FakeSlack) -> None:  # noqa: F811
    with pytest.raises(ConfigurationSendError) as info:
        SlackMessenger("xoxb-wrong", fake_slack.base_url, timeout=5).send(message(SLACK_USER))

    assert info.value.code == "slack:invalid_auth"
    assert "DULY_SLACK_BOT_TOKEN" in info.value.fix
    assert "xoxb-wrong" not in str(info.value) + info.value.fix


@pytest.mark.parametrize(
    "error", ["not_authed", "account_inactive", "token_revoked", "token_expired", "missing_scope"]
)
def test_slack_token_and_scope_errors_are_configuration_errors(
    fake_slack: FakeSlack,  # noqa: F811
    error: str,
) -> None:
    fake_slack.permanent_next(1, error=error)

    with pytest.raises(ConfigurationSendError) as info:
        slack_channel(fake_slack).send(message(SLACK_USER))

    assert info.value.code == f"slack:{error}"


def test_slack_transient_api_error(fake_slack: FakeSlack) -> None:  # noqa: F811
    fake_slack.permanent_next(1, error="service_unavailable")  # HTTP 200, ok=false

    with pytest.raises(TransientSendError) as info:
        slack_channel(fake_slack).send(message(SLACK_USER))

    assert info.value.code == "slack:service_unavailable"


def test_slack_timeout_is_transient(fake_slack: FakeSlack) -> None:  # noqa: F811
    fake_slack.slow_next(1, seconds=3)
    started = time.monotonic()

    with pytest.raises(TransientSendError) as info:
        slack_channel(fake_slack, timeout=SHORT_TIMEOUT).send(message(SLACK_USER))

    assert time.monotonic() - started < 2
    assert info.value.code == "slack:timeout"
    assert len(fake_slack.received) == 1


def test_slack_base_url_may_already_end_in_api(fake_slack: FakeSlack) -> None:  # noqa: F811
    SlackMessenger(fake_slack.token, fake_slack.base_url + "/api/").send(message(SLACK_USER))

    assert fake_slack.accepted[0].path == "/api/chat.postMessage"


# -------------------------------------------------------------------------------------------------
# build_channels
# -------------------------------------------------------------------------------------------------

NO_PROVIDERS: dict[str, object] = {
    "sendgrid_api_key": None,
    "sendgrid_base_url": None,
    "twilio_account_sid": None,
    "twilio_auth_token": None,
    "twilio_from_number": None,
    "twilio_base_url": None,
    "slack_bot_token": None,
    "slack_base_url": None,
}


def settings(**overrides: object) -> Settings:
    return Settings(**{**NO_PROVIDERS, **overrides})  # type: ignore[arg-type]


def test_build_channels_without_credentials_is_empty() -> None:
    assert build_channels(settings()) == {}


def test_build_channels_needs_every_twilio_setting() -> None:
    partial = settings(twilio_account_sid="AC123", twilio_auth_token="token")

    assert "sms" not in build_channels(partial)


def test_build_channels_ignores_blank_secrets() -> None:
    assert build_channels(settings(sendgrid_api_key=" ", slack_bot_token="")) == {}


def test_build_channels_with_credentials_sends_through_the_fakes(
    fake_sendgrid: FakeSendGrid,  # noqa: F811
    fake_twilio: FakeTwilio,  # noqa: F811
    fake_slack: FakeSlack,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    configured = settings(
        sendgrid_api_key=fake_sendgrid.api_key,
        sendgrid_from_email=FROM_EMAIL,
        sendgrid_base_url=fake_sendgrid.base_url,
        twilio_account_sid=fake_twilio.account_sid,
        twilio_auth_token=fake_twilio.auth_token,
        twilio_from_number=FROM_NUMBER,
        twilio_base_url=fake_twilio.base_url,
        slack_bot_token=fake_slack.token,
        slack_base_url=fake_slack.base_url,
    )

    with caplog.at_level(logging.DEBUG):
        channels = build_channels(configured)
        channels["email"].send(message(EMAIL))
        channels["sms"].send(message(PHONE))
        channels["slack"].send(message(SLACK_USER))

    assert sorted(channels) == ["email", "slack", "sms"]
    assert {name: (c.name, c.provider) for name, c in channels.items()} == {
        "email": ("email", "sendgrid"),
        "sms": ("sms", "twilio"),
        "slack": ("slack", "slack"),
    }
    assert isinstance(channels["email"], SendGridEmail)
    assert isinstance(channels["sms"], TwilioSms)
    assert isinstance(channels["slack"], SlackMessenger)
    assert [len(f.accepted) for f in (fake_sendgrid, fake_twilio, fake_slack)] == [1, 1, 1]
    # Even at DEBUG, neither Duly nor the SDKs log a secret or an address.
    for secret in (fake_sendgrid.api_key, fake_twilio.auth_token, fake_slack.token):
        assert secret not in caplog.text
    for address in (EMAIL, PHONE, SLACK_USER):
        assert address not in caplog.text


def test_build_channels_logs_missing_channels_by_setting_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="duly.providers"):
        build_channels(settings(slack_bot_token="xoxb-secret"))

    assert "DULY_SENDGRID_API_KEY" in caplog.text
    assert "DULY_TWILIO_AUTH_TOKEN" in caplog.text
    assert "xoxb-secret" not in caplog.text


# -------------------------------------------------------------------------------------------------
# Helpers
# -------------------------------------------------------------------------------------------------


def test_scrub_removes_addresses_and_numbers() -> None:
    text = f"Mail to {EMAIL} or call {PHONE} / (555) 010-9999 failed"

    assert _scrub(text) == "Mail to <email> or call <number> / <number> failed"


def test_retry_after_parses_seconds_and_dates() -> None:
    assert _retry_after("12") == 12
    assert _retry_after("1.5") == 1.5
    assert _retry_after(None) is None
    assert _retry_after("soon") is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past
    later = _retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60)))
    assert later is not None and 50 < later <= 60
