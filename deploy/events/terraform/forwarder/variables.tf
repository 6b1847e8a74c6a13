variable "daemon_account_id" {
  description = "The account the main module (deploy/events/terraform) is applied in (may be this account)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.daemon_account_id))
    error_message = "daemon_account_id: a 12-digit account id."
  }
}

variable "daemon_region" {
  description = "The Region the main module is applied in (stacksetd's aws.region)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.daemon_region))
    error_message = "daemon_region: a Region name such as eu-west-1."
  }
}

variable "rule_name" {
  description = "The forwarding rule's name."
  type        = string
  default     = "stacksetd-organizations-forwarder"
}
