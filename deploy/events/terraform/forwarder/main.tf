# The management account's side of organizations_events = "forwarded" (the same resources as
# ../../stacksetd-events-forwarder.yaml): a rule on the default bus that sends the Organizations events stacksetd reads
# to the default bus of stacksetd's account and Region, through a role. Apply with management account credentials in
# us-east-1: Organizations' events reach EventBridge only there, and only through CloudTrail (a trail must be logging
# in this account). The main module, applied with organizations_events = "forwarded" and management_account_id set to
# this account, lets this account put events on its bus and sends them on to the queue.
#
# account_event_names is stacksetd::events::ACCOUNT_EVENTS; the test deploy_units::events compares.

terraform {
  required_version = ">= 1.3"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

data "aws_partition" "current" {}

locals {
  organizations_detail_types = [
    "AWS API Call via CloudTrail",
    "AWS Service Event via CloudTrail",
  ]

  account_event_names = [
    "MoveAccount",
    "CreateAccountResult",
    "InviteAccountToOrganization",
    "AcceptHandshake",
    "RemoveAccountFromOrganization",
    "AccountJoinedOrganization",
    "AccountDepartedOrganization",
  ]

  daemon_bus_arn = "arn:${data.aws_partition.current.partition}:events:${var.daemon_region}:${var.daemon_account_id}:event-bus/default"
}

data "aws_iam_policy_document" "trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "put_events" {
  statement {
    effect    = "Allow"
    actions   = ["events:PutEvents"]
    resources = [local.daemon_bus_arn]
  }
}

resource "aws_iam_role" "forward" {
  name_prefix        = "stacksetd-forwarder-"
  description        = "EventBridge puts the forwarded Organizations events on stacksetd's event bus"
  assume_role_policy = data.aws_iam_policy_document.trust.json
}

resource "aws_iam_role_policy" "forward" {
  name   = "PutEventsOnStacksetdBus"
  role   = aws_iam_role.forward.id
  policy = data.aws_iam_policy_document.put_events.json
}

resource "aws_cloudwatch_event_rule" "forward" {
  name           = var.rule_name
  description    = "AWS Organizations account events (through CloudTrail), forwarded to stacksetd's event bus"
  event_bus_name = "default"

  event_pattern = jsonencode({
    source        = ["aws.organizations"]
    "detail-type" = local.organizations_detail_types
    detail = {
      eventSource = ["organizations.amazonaws.com"]
      eventName   = local.account_event_names
    }
  })
}

resource "aws_cloudwatch_event_target" "forward" {
  rule           = aws_cloudwatch_event_rule.forward.name
  event_bus_name = "default"
  target_id      = "stacksetd-event-bus"
  arn            = local.daemon_bus_arn
  role_arn       = aws_iam_role.forward.arn
}
