variable "queue_name" {
  description = "The queue's name; the dead-letter queue is <name>-dlq and the rules <name>-stack-sets and <name>-organizations."
  type        = string
  default     = "stacksetd-events"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,60}$", var.queue_name))
    error_message = "queue_name: 1 to 60 letters, digits, - and _ (room is left for the -dlq suffix)."
  }
}

variable "message_retention_seconds" {
  description = "How long an event waits on the queue for the daemon (default 4 days)."
  type        = number
  default     = 345600

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600
    error_message = "message_retention_seconds: 60 to 1209600 (14 days)."
  }
}

variable "max_receive_count" {
  description = "Receives before a message the daemon never deletes moves to the dead-letter queue."
  type        = number
  default     = 10

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count: 1 to 1000."
  }
}

variable "organizations_events" {
  description = <<-EOT
    local: this module is applied in the management account in us-east-1, where Organizations' CloudTrail events
    arrive (a CloudTrail trail must be logging there). forwarded: the management account forwards them to this
    account's default bus (forwarder/ or ../stacksetd-events-forwarder.yaml there); set management_account_id.
    off: no Organizations events (stacksetd still sees account moves at its next organization scan).
  EOT
  type        = string
  default     = "local"

  validation {
    condition     = contains(["local", "forwarded", "off"], var.organizations_events)
    error_message = "organizations_events: local, forwarded or off."
  }
}

variable "management_account_id" {
  description = "With organizations_events = \"forwarded\": the management account allowed to put events on this account's default bus."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([0-9]{12})?$", var.management_account_id))
    error_message = "management_account_id: a 12-digit account id (or empty)."
  }
}

variable "daemon_role_name" {
  description = "Optional: stacksetd's IAM role in this account; given, a policy granting exactly the queue actions the daemon calls, on this queue only, is attached to it."
  type        = string
  default     = ""
}
