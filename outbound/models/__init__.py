from outbound.models.alert import Alert
from outbound.models.apikey import ApiKey
from outbound.models.audit import AuditEntry
from outbound.models.backend import Backend, BackendKind, BackendSlot, Health, Security
from outbound.models.contact import Contact
from outbound.models.message import Attachment, Attempt, Event, Message, Recipient
from outbound.models.ratewindow import RateWindow
from outbound.models.replay import ApiReplay
from outbound.models.settings import GlobalSettings
from outbound.models.suppression import Suppression
from outbound.models.worker import WorkerHeartbeat

__all__ = [
    "Alert",
    "ApiKey",
    "ApiReplay",
    "Attachment",
    "Attempt",
    "AuditEntry",
    "Backend",
    "BackendKind",
    "BackendSlot",
    "Contact",
    "Event",
    "GlobalSettings",
    "Health",
    "Message",
    "RateWindow",
    "Recipient",
    "Security",
    "Suppression",
    "WorkerHeartbeat",
]
