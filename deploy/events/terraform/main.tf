# stacksetd's event feed (settings key `events.queue_url`), the same resources as ../stacksetd-events.yaml: the SQS
# queue the daemon long-polls (ReceiveMessage, 20 s wait, batches of 10, then DeleteMessageBatch), its dead-letter
# queue, and the EventBridge rules that put the events stacksetd reads onto it unchanged (no input transformer: the
# message body is the whole EventBridge envelope).
#
# Apply with the credentials and Region stacksetd runs with (the stack set administrator account, its aws.region):
# CloudFormation emits the StackSet events there. The Organizations events arrive only through CloudTrail (a trail
# must be logging in the management account), on the management account's default bus in us-east-1; see
# var.organizations_events and ../stacksetd-events.yaml for the three modes and the AWS documentation they rest on.
#
# The lists below are stacksetd::events::STACK_SET_KINDS, ACCOUNT_EVENTS and QUEUE_ACTIONS; the test
# deploy_units::events reads them from this file and compares.

terraform {
  required_version = ">= 1.3"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

locals {
  stack_set_detail_types = [
    "CloudFormation StackSet Status Change",
    "CloudFormation StackSet Operation Status Change",
    "CloudFormation StackSet StackInstance Status Change",
  ]

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

  daemon_queue_actions = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
  ]

  organizations_rule = var.organizations_events != "off"
  # The queue's Region, from its ARN (arn:<partition>:sqs:<region>:<account>:<name>).
  region = split(":", aws_sqs_queue.events.arn)[3]
}

resource "aws_sqs_queue" "dead_letter" {
  name                      = "${var.queue_name}-dlq"
  sqs_managed_sse_enabled   = true
  message_retention_seconds = 1209600
}

resource "aws_sqs_queue" "events" {
  name                      = var.queue_name
  sqs_managed_sse_enabled   = true
  message_retention_seconds = var.message_retention_seconds
  # The daemon deletes a batch once its passes are triggered, well within a minute.
  visibility_timeout_seconds = 60
  receive_wait_time_seconds  = 20

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter.arn
    maxReceiveCount     = var.max_receive_count
  })
}

# Only the event queue may redrive into the dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "dead_letter" {
  queue_url = aws_sqs_queue.dead_letter.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events.arn]
  })
}

resource "aws_cloudwatch_event_rule" "stack_sets" {
  name           = "${var.queue_name}-stack-sets"
  description    = "CloudFormation StackSet events for stacksetd"
  event_bus_name = "default"

  event_pattern = jsonencode({
    source        = ["aws.cloudformation"]
    "detail-type" = local.stack_set_detail_types
  })
}

resource "aws_cloudwatch_event_target" "stack_sets" {
  rule           = aws_cloudwatch_event_rule.stack_sets.name
  event_bus_name = "default"
  target_id      = "stacksetd-queue"
  arn            = aws_sqs_queue.events.arn
}

# Local: Organizations' CloudTrail events arrive here (management account, us-east-1). Forwarded: the management
# account's forwarding rule puts them on this bus, and this rule (EventBridge keeps their source and detail) sends
# them on to the queue.
resource "aws_cloudwatch_event_rule" "organizations" {
  count          = local.organizations_rule ? 1 : 0
  name           = "${var.queue_name}-organizations"
  description    = "AWS Organizations account events (through CloudTrail) for stacksetd"
  event_bus_name = "default"

  event_pattern = jsonencode({
    source        = ["aws.organizations"]
    "detail-type" = local.organizations_detail_types
    detail = {
      eventSource = ["organizations.amazonaws.com"]
      eventName   = local.account_event_names
    }
  })

  lifecycle {
    precondition {
      condition     = var.organizations_events != "local" || local.region == "us-east-1"
      error_message = "Organizations events reach EventBridge only in us-east-1 of the management account: apply there, or use organizations_events = \"forwarded\" (with the forwarder in the management account) or \"off\"."
    }
  }
}

resource "aws_cloudwatch_event_target" "organizations" {
  count          = local.organizations_rule ? 1 : 0
  rule           = aws_cloudwatch_event_rule.organizations[0].name
  event_bus_name = "default"
  target_id      = "stacksetd-queue"
  arn            = aws_sqs_queue.events.arn
}

# EventBridge may send to the queue, and only for these rules.
data "aws_iam_policy_document" "queue" {
  statement {
    sid       = "EventBridgeRules"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.events.arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = concat([aws_cloudwatch_event_rule.stack_sets.arn], aws_cloudwatch_event_rule.organizations[*].arn)
    }
  }
}

resource "aws_sqs_queue_policy" "events" {
  queue_url = aws_sqs_queue.events.id
  policy    = data.aws_iam_policy_document.queue.json
}

# Forwarded: the management account's forwarding rule may put events on this account's default bus. One statement
# added to the bus's policy (PutPermission), as the CloudFormation template's EventBusPolicy does; not
# aws_cloudwatch_event_bus_policy, which would replace every other statement of the default bus's policy.
resource "aws_cloudwatch_event_permission" "forwarded" {
  count          = var.organizations_events == "forwarded" ? 1 : 0
  event_bus_name = "default"
  statement_id   = "${var.queue_name}-organizations-forwarder"
  action         = "events:PutEvents"
  principal      = var.management_account_id

  lifecycle {
    precondition {
      condition     = var.management_account_id != ""
      error_message = "organizations_events = \"forwarded\" needs management_account_id (the account that forwards them)."
    }
  }
}

# What the daemon itself needs on the queue (the same grant as deploy/iam/stacksetd-policy-events.json).
data "aws_iam_policy_document" "daemon" {
  statement {
    sid       = "EventQueue"
    effect    = "Allow"
    actions   = local.daemon_queue_actions
    resources = [aws_sqs_queue.events.arn]
  }
}

resource "aws_iam_policy" "daemon" {
  count       = var.daemon_role_name != "" ? 1 : 0
  name        = "${var.queue_name}-daemon"
  description = "stacksetd reads and deletes its event queue's messages"
  policy      = data.aws_iam_policy_document.daemon.json
}

resource "aws_iam_role_policy_attachment" "daemon" {
  count      = var.daemon_role_name != "" ? 1 : 0
  role       = var.daemon_role_name
  policy_arn = aws_iam_policy.daemon[0].arn
}
